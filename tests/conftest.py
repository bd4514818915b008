import sys
from pathlib import Path

# Shared test helpers (conformance suites, data makers) import by module name.
sys.path.insert(0, str(Path(__file__).parent / "conformance"))
sys.path.insert(0, str(Path(__file__).parent))

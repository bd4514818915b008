"""The one progress bar of the engine: a tqdm bar with a postfix of live statistics.

On a terminal the bar refreshes about four times a second; off a terminal (CI logs, pipes), where every
refresh is a new line, every 15 seconds. A disabled bar costs nothing, so loops create one unconditionally.

Example:
    >>> with ProgressBar(1000, description="fitting") as bar:
    ...     for step in range(1000):
    ...         bar.update(loss=float(loss))      # the postfix is formatted only when the bar is redrawn
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping


class ProgressBar:
    """A tqdm bar over ``total`` steps that shows live statistics.

    Args:
        total: Number of steps of the whole run.
        initial: Steps already done (a resumed run).
        description: Text before the bar.
        enabled: ``False`` gives a bar that does nothing.
        unit: Name of one step.
    """

    def __init__(self, total: int, *, initial: int = 0, description: str = "", enabled: bool = True,
                 unit: str = "it"):
        self.enabled = bool(enabled)
        self._bar = None
        self._last_postfix = -float("inf")
        if self.enabled:
            from tqdm.auto import tqdm

            self.refresh_every = 0.25 if sys.stderr.isatty() else 15.0
            self._bar = tqdm(total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True,
                             leave=True, mininterval=self.refresh_every)

    def update(self, n: int = 1, **stats) -> None:
        """Advance by ``n`` steps; ``stats`` (name -> number or text) become the postfix when the bar is next
        redrawn (they are formatted at most once per refresh interval)."""
        if self._bar is None:
            return
        self._bar.update(n)
        if stats and self.postfix_due:
            self.set_postfix(stats)

    @property
    def postfix_due(self) -> bool:
        """Whether a postfix set now would be shown: callers with costly statistics (e.g. tensors to sync) check
        this and call :meth:`set_postfix` only then."""
        return self._bar is not None and time.perf_counter() - self._last_postfix > self.refresh_every

    def set_postfix(self, stats: Mapping[str, object]) -> None:
        """Show ``stats`` (floats with 4 significant digits) after the bar from its next redraw on."""
        if self._bar is None:
            return
        self._last_postfix = time.perf_counter()
        self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in stats.items()},
                              refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

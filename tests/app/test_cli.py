"""The ``probnets`` command line core: subcommands come from the ``probnets.commands`` entry points, and the
top-level parser is built without importing torch."""

import json
import os
import subprocess
import sys

from probnets_app import cli
from probnets_app.command import Command


def test_this_distribution_registers_fit_and_bo():
    commands = cli.registered_commands()
    assert {"fit", "bo"} <= set(commands)
    assert all(isinstance(command, Command) for command in commands.values())


def test_a_registered_command_is_listed_parsed_and_run(monkeypatch, capsys):
    def add_arguments(parser):
        parser.add_argument("--times", type=int, default=1)

    def run(args, parser):
        print("hello " * args.times)
        return 0

    hello = Command(help="say hello", add_arguments=add_arguments, run=run)
    monkeypatch.setattr(cli, "registered_commands", lambda: {"hello": hello})
    assert "say hello" in cli.build_parser().format_help()
    assert cli.main(["hello", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello hello"


def test_data_errors_are_one_line_with_exit_status_2(monkeypatch, capsys):
    def run(args, parser):
        raise cli.DataError("bad\ndata")

    failing = Command(help="fails", add_arguments=lambda parser: None, run=run)
    monkeypatch.setattr(cli, "registered_commands", lambda: {"fail": failing})
    assert cli.main(["fail"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == "probnets: error: bad data\n"


def test_top_level_parser_imports_neither_torch_nor_botorch():
    code = ("import sys; from probnets_app.cli import build_parser; build_parser(configure=()).format_help(); "
            "print(sorted(m for m in ('torch', 'botorch', 'inference', 'surrogates') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _spin_setting(env: dict) -> list:
    code = ("import json, os; from probnets_app import cli; cli.short_openmp_spin(); "
            "print(json.dumps([os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY')]))")
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**base, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_openmp_threads_spin_briefly_unless_the_user_chose_a_wait_policy():
    assert _spin_setting({}) == [str(cli.OPENMP_SPIN_COUNT), None]
    assert _spin_setting({"OMP_WAIT_POLICY": "ACTIVE"}) == [None, "ACTIVE"]
    assert _spin_setting({"GOMP_SPINCOUNT": "5"}) == ["5", None]


def test_the_spin_count_is_not_changed_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401  (OpenMP has read its settings)

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cli.short_openmp_spin()
    assert "GOMP_SPINCOUNT" not in os.environ

"""`butterfly help` is `butterfly --help`; `butterfly help <cmd>` is `butterfly <cmd> --help`."""

from __future__ import annotations

import subprocess
import sys


def butterfly(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "butterfly_common.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_help_equals_dash_dash_help():
    plain, dashed = butterfly("help"), butterfly("--help")
    assert plain.returncode == dashed.returncode == 0
    assert plain.stdout == dashed.stdout and "publish" in plain.stdout
    assert "help" in plain.stdout.split("positional arguments:")[1]


def test_help_of_one_command():
    assert butterfly("help", "publish").stdout == butterfly("publish", "--help").stdout


def test_no_command_prints_the_help():
    assert butterfly().stdout == butterfly("--help").stdout


def test_publish_usage_quotes_balance():
    usage = butterfly("publish", "--help").stdout.splitlines()[0]
    assert usage.startswith("usage: butterfly publish /app/handler ['{\"k\": \"v\"}'] [--wait]")
    assert usage.count("'") % 2 == 0 and usage.count('"') % 2 == 0

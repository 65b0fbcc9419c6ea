"""A plugin adds commands to ``polyjobs`` (``polyjobs_cli_commands``): listed by ``--help`` under
the plugin's name, run like the command line's own, imported only when one runs or is listed.
The detector's ``alerts``, ``wallets`` and ``replay`` come this way (tests/cli/
test_detector_listings.py and test_replay_cli.py run them); examples/plugin adds one from an
installed package (tests/engine/test_plugins.py)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import pytest
from typer.testing import CliRunner

from polyjobs import hookimpl
from polyjobs.cli.app import app
from polyjobs.errors import PluginError
from polyjobs.plugins import PluginHost

runner = CliRunner()


def cli(env: Mapping[str, str], *args: str) -> Any:
    result = runner.invoke(app, list(args), env={**env, "COLUMNS": "100"})
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def plugin_env(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delitem(sys.modules, "command_plugin_commands", raising=False)
    return {**cli_env, "POLYJOBS_PLUGINS": "polyjobs_test_plugin,command_plugin"}


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
def test_a_plugins_commands_are_listed_and_run(plugin_env: dict[str, str]) -> None:
    listed = cli(plugin_env, "--help")
    assert listed.exit_code == 0, listed.output
    ours, theirs = listed.stdout.split("Commands of command_plugin")
    assert "enqueue" in ours and "hello" not in ours
    assert "Say hello to NAME." in theirs and "Greetings, loud or quiet." in theirs
    assert "Commands of polymarket" in listed.stdout  # the detector's, from its entry point
    assert "alerts" in listed.stdout.split("Commands of polymarket")[1]

    assert cli(plugin_env, "hello", "--name", "Ada").stdout == "hello Ada\n"
    assert cli(plugin_env, "hello").stdout == "hello world\n"
    assert cli(plugin_env, "greetings", "loud", "Ada").stdout == "HELLO ADA\n"
    sub_help = cli(plugin_env, "greetings", "--help")
    assert "loud" in sub_help.stdout and "quiet" in sub_help.stdout
    assert "Usage: polyjobs greetings" in sub_help.stdout
    bad = cli(plugin_env, "hello", "--nme", "x")
    assert bad.exit_code == 2
    assert "No such option: --nme" in bad.stderr and "polyjobs hello --help" in bad.stderr
    typo = cli(plugin_env, "helo")
    assert typo.exit_code == 2 and "Did you mean 'hello'" in typo.stderr


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
def test_a_command_of_the_command_line_does_not_import_a_plugins_commands(
    plugin_env: dict[str, str],
) -> None:
    assert cli(plugin_env, "backends", "--json").exit_code == 0
    assert cli(plugin_env, "hello").exit_code == 0
    assert "command_plugin_commands" in sys.modules
    sys.modules.pop("command_plugin_commands")
    assert cli(plugin_env, "config", "--json").exit_code == 0
    assert "command_plugin_commands" not in sys.modules


class Adds:
    def __init__(self, commands: Mapping[str, str]) -> None:
        self.commands = commands

    @hookimpl
    def polyjobs_cli_commands(self) -> Mapping[str, str]:
        return self.commands


@pytest.mark.parametrize(
    ("plugins", "error"),
    [
        ([{"Bad_Name": "m:f"}], "command 'Bad_Name' of"),
        ([{"ok": "no-colon"}], "'no-colon' is not 'module:attribute'"),
        ([{"twice": "a:f"}, {"twice": "b:f"}], "command 'twice' is contributed by both"),
    ],
)
def test_bad_commands_of_plugins_are_refused(plugins: list[dict[str, str]], error: str) -> None:
    host = PluginHost.load(extra=[Adds(p) for p in plugins], entry_points=False)
    with pytest.raises(PluginError, match=error):
        host.cli_commands()


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("commands", "error"),
    [
        ('{"start": "command_plugin_commands:hello"}', "adds a command 'start', which polyjobs"),
        ('{"nothing": "command_plugin_commands:missing"}', "cannot load the command 'nothing'"),
        ('{"nowhere": "no_such_module_here:f"}', "No module named 'no_such_module_here'"),
        ('{"text": "command_plugin:__doc__"}', "is not a function, a Typer app or a click"),
    ],
)
def test_a_plugin_command_that_cannot_be_used_is_one_line(
    cli_env: dict[str, str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    commands: str,
    error: str,
) -> None:
    (tmp_path / "odd_plugin.py").write_text(
        "from polyjobs import hookimpl\n"
        "@hookimpl\n"
        f"def polyjobs_cli_commands():\n    return {commands}\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "odd_plugin", raising=False)
    env = {**cli_env, "POLYJOBS_PLUGINS": "odd_plugin"}
    name = commands.split('"')[1]
    # running one (the command line's own "start" is not the plugin's): one error line
    result = cli(env, name if name != "start" else "strat")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and error in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # listing them: the command line's own, and one line on why the plugins' are not there
    listed = cli(env, "--help")
    assert listed.exit_code == 0, listed.output
    assert "enqueue" in listed.stdout and "Commands of odd_plugin" not in listed.stdout
    assert listed.stderr.startswith("polyjobs: ") and error in listed.stderr, listed.stderr
    assert listed.stderr.strip().endswith("not listed")
    assert len(listed.stderr.strip().splitlines()) == 1
    # the command line's own commands still run, "start" included
    assert cli(env, "backends", "--json").exit_code == 0
    assert "Run workers" in cli(env, "start", "--help").stdout


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
def test_help_with_a_broken_config_file_lists_the_command_lines_own(
    cli_env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "polyjobs.toml").write_text("plugins = [\n", encoding="utf-8")
    listed = cli(cli_env, "--help")
    assert listed.exit_code == 0, listed.output
    assert "enqueue" in listed.stdout and "queue" in listed.stdout
    assert "polyjobs.toml" in listed.stderr and len(listed.stderr.strip().splitlines()) == 1
    broken = cli(cli_env, "alerts")
    assert broken.exit_code == 1 and broken.stderr.startswith("error: cannot read")


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("source", "error"),
    [
        ('raise RuntimeError("no token configured")\n', "RuntimeError: no token configured"),
        ("def broken(:\n", "SyntaxError: "),
    ],
)
def test_a_plugin_module_that_fails_at_import_is_one_line(
    cli_env: dict[str, str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    error: str,
) -> None:
    """A plugin module that raises while it is imported (not an ImportError): `--help` lists
    the command line's own and says why in one line, any command fails in one line naming the
    module and where it failed (was: a traceback from --help, 'unexpected RuntimeError' from the
    others)."""
    (tmp_path / "boom_plugin.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "boom_plugin", raising=False)
    env = {**cli_env, "POLYJOBS_PLUGINS": "boom_plugin"}
    listed = cli(env, "--help")
    assert listed.exit_code == 0 and listed.exception is None, listed.exception
    assert "enqueue" in listed.stdout
    assert "boom_plugin" in listed.stderr and error in listed.stderr, listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1
    ran = cli(env, "stats")
    assert ran.exit_code == 1, ran.output
    assert not isinstance(ran.exception, RuntimeError | SyntaxError), ran.exception
    assert ran.stderr.startswith("error: cannot load plugin module 'boom_plugin'"), ran.stderr
    assert error in ran.stderr and "boom_plugin.py" in ran.stderr, ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
def test_an_installed_plugin_that_fails_at_import_is_one_line(
    cli_env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package installed with a ``polyjobs`` entry point whose module raises on import:
    `--help` lists the command line's own and says why in one line, a command fails in one
    line (was: a traceback from --help, 'unexpected RuntimeError' from the others)."""
    (tmp_path / "boom_installed.py").write_text('raise RuntimeError("half installed")\n')
    info = tmp_path / "boom_installed-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-installed\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[polyjobs]\nboom = boom_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "boom_installed", raising=False)
    listed = cli(cli_env, "--help")
    assert listed.exit_code == 0 and listed.exception is None, listed.exception
    assert "enqueue" in listed.stdout
    assert "RuntimeError: half installed" in listed.stderr, listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1
    ran = cli(cli_env, "stats")
    assert ran.exit_code == 1, ran.output
    assert ran.stderr.startswith("error: cannot load the plugins installed"), ran.stderr
    assert "boom_installed.py" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1

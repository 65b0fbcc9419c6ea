"""A plugin for the CLI tests that adds commands (POLYJOBS_PLUGINS=command_plugin): their module,
``command_plugin_commands``, is named, not imported."""

from __future__ import annotations

from collections.abc import Mapping

from polyjobs import hookimpl


@hookimpl
def polyjobs_cli_commands() -> Mapping[str, str]:
    return {
        "hello": "command_plugin_commands:hello",
        "greetings": "command_plugin_commands:greetings",
    }

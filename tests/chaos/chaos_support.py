"""Shared helpers of the chaos suite (imported as ``tests.chaos.chaos_support``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_REDIS = "redis://127.0.0.1:6379/0"
POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
SECRET_VARIABLES = ("REDIS_URL", "DISCORD_WEBHOOK_URL")

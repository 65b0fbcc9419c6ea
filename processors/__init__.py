"""The Polymarket job processors and their QueueSpecs (contributed through plugin hooks)."""

"""Queue backends, one subpackage each; each registers itself as a polyjobs plugin."""

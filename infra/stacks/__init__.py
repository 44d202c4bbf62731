"""One module per stack; stacks take each other's resources as typed arguments."""

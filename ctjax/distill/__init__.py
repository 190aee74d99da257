"""Offline distillation: losses, the training loop and checkpoints (Orbax)."""

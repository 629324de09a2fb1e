"""Plots for `--plots` (optional extra `plots`): drawn from scores only, never from an image."""

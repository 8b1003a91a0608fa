"""The worker ("firework"): obeys commands and reports its status."""

"""Intent against what is installed: every hypervisor's switch against the controller."""

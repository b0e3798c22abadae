"""Parts of scripts/soak.py: wire helpers, the origin, misbehaving clients."""

"""The freehub command line, installed as freehub.cli."""

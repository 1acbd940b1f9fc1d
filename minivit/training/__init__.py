"""The training code, a room per job; ``minivit.train`` is its front door (see its docstring)."""

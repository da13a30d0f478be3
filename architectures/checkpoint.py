"""Placeholder: being written (see docs/design.md)."""
def load_checkpoint(model, path_or_state_dict):
    raise NotImplementedError

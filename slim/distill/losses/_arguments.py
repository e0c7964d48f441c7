"""Checks of the losses' arguments, raised where the loss is built: the config reader turns
the ValueError into one line naming the term."""


def require_positive(loss_name, **values):
    """Temperatures divide the logits: zero is undefined, a negative one inverts the
    distribution the student is taught."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f'{loss_name} {name} must be a positive number, got {value!r}')

"""Registering a component under a name paddleseg already uses, on purpose."""


def override_component(component_manager):
    """Decorator: registers the class under its name, replacing paddleseg's entry silently
    (paddleseg's add_component would warn on stderr, breaking one-line error output)."""

    def register(component):
        component_manager.components_dict[component.__name__] = component
        return component

    return register

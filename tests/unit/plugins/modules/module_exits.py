"""What a module under test raised instead of exiting; the result dict is the exception's argument."""


class ModuleExit(Exception):
    """exit_json was called."""


class ModuleFail(Exception):
    """fail_json was called."""

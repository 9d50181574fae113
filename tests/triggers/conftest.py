from tests.webhooks.conftest import client, dispatcher, hook, settings

__all__ = ["client", "dispatcher", "hook", "settings"]

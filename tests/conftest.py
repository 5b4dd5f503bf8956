import logging

import pytest


@pytest.fixture
def mmengine_log():
    """The messages mmengine's current logger emits during the test (``print_log(logger='current')``),
    whatever stream its handlers were bound to when it was created."""
    from mmengine.logging import MMLogger

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)

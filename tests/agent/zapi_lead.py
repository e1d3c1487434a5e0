"""A lead writing on WhatsApp through Z-API, for tests that follow a whole conversation."""

import copy

from conversations.models import Message
from tests.channels.webhooks import load_fixture_json, post_webhook


class Lead_:
    """A lead writing on WhatsApp through Z-API."""

    def __init__(self, client, chip, capture) -> None:
        self.client, self.chip, self.capture = client, chip, capture
        self.sent = 0

    def says(self, text: str) -> None:
        payload = copy.deepcopy(load_fixture_json("zapi", "received__text"))
        self.sent += 1
        payload["messageId"] = f"3EB0{self.sent:016d}"
        payload["momment"] += self.sent * 1000
        payload["senderName"] = "Daniella Harumi"
        payload["text"]["message"] = text
        with self.capture(execute=True):
            response = post_webhook(self.client, self.chip, payload)
        assert response.status_code == 200, response.content


def bot_messages(conversation):
    return list(
        Message.objects.filter(conversation=conversation, direction=Message.Direction.OUTBOUND)
        .order_by("pk")
        .values_list("body", flat=True)
    )

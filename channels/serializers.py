"""Response shapes of the webhook API, for the OpenAPI schema."""

from rest_framework import serializers


class WebhookAcceptedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted", "duplicate"])
    event_id = serializers.IntegerField()


class WebhookErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="Machine-readable code, e.g. `invalid`, `forbidden`")
    detail = serializers.CharField()
    event_id = serializers.IntegerField(
        required=False, help_text="The stored invalid event, when the chip is known"
    )

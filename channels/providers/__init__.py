"""One adapter module per WhatsApp provider, all behind `base.ProviderAdapter`."""

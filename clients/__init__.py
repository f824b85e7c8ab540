"""Flower ClientApp of fedsim: unpack the message, train locally, (later: defend), reply."""

"""The character language model, an engine plug-in (docs/protocol.md §7): its run settings,
generated samples and summaries; its commands are in cli/lm.py."""

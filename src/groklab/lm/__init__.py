"""The character language model (SPEC §7): generated samples, the `lm` and `sample` commands."""

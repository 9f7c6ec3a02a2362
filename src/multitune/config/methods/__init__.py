"""The settings of every pluggable family, one module each: a config class per method and the
family's union of them, discriminated by `name`, which the params schema takes.

`weighting`, `freezing`, `sampling` (`train:`); `fusion`, `sharing`, `backbone` (`model:`);
`encoders` (`data.modalities.<name>.encoder`). The implementations, in `multitune.training`,
`multitune.models` and `multitune.embed`, register against these classes
(`multitune.registry`); nothing here imports them.
"""

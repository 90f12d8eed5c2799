"""Generated stubs of KEDA's externalscaler protocol (regenerate with `python -m kedascaler.proto.generate`)."""

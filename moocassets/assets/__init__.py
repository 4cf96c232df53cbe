"""Thin asset definitions: wire resources to transforms, nothing else."""

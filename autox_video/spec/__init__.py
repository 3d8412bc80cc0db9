"""Pydantic models of the custom resources (group autox.io, version v1alpha1); torch-free.

Import from the modules: common, training, inference, search. Nothing is re-exported here: config.py
builds on spec.search and spec.training on config.py, so a package that imported training would put
config.py in an import circle. The CRDs in crds/ are generated from these models: `make crds`.
"""

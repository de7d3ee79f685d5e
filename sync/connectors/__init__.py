"""Thin adapters to the two services: `dynamics` (Dataverse Web API) and `marketo` (Marketo REST). They never import
the engine; they speak pydantic models and typed exceptions, never raw response dicts."""

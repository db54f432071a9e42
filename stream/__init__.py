"""Streaming side: Faust app, event schema, agents, tables, web views, producer client, trainer loop."""

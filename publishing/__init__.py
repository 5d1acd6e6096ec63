"""Publishing: compose once, publish to every connected account (issue 14).

Its pure rules live in one-topic modules with no Django in them: `text` (how each platform
counts a post), `facets` (Bluesky rich-text facets) and `media` (upload checks, metadata
stripping, per-platform re-encodes).
"""

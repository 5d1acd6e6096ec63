"""Platforms played on 127.0.0.1 by the test suite (browser journeys and the sentinel sweep)."""

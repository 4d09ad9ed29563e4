"""Tests that drive the real ``mctsff`` command in subprocesses (a package, so that its
module names do not clash with the in-process tests in ``tests/``)."""

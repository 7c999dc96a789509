"""smtpretry's benchmarks: ``.venv/bin/python -m benchmarks.run`` (see README.md here).

Timing lives here, never in a test assertion.
"""

"""Runtimes that turn specs into running APIs: `local` (processes on one machine) and, later, `ray`."""

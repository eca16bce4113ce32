"""The embedded runtime: a daemon that runs replicas as processes on one machine behind one gateway."""

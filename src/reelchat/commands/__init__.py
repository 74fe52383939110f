"""The CLI's commands for people: `generate`, `tasks`, `doctor` (the server's own are in `cli`)."""

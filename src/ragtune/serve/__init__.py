"""`ragtune serve`: an OpenAI-compatible API and a chat web app over a project, every strategy, with citations."""

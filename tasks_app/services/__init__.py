"""Business logic: every state change of Agentsite goes through a function here."""

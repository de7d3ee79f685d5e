"""Local stand-ins for the services the sync talks to: Azurite and our Dataverse and Marketo emulators."""

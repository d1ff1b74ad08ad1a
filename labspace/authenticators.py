"""The OAuthenticator classes Labspace signs people in with (one per provider
family of ``labspace.auth.PROVIDERS``, which names them by import path so that
reading or checking settings never loads OAuthenticator). They add one thing to
OAuthenticator's: a person who is refused is told why, and a refresh that finds
the person no longer allowed ends their session. No OAuth is implemented here.
"""

from __future__ import annotations

from oauthenticator.azuread import AzureAdOAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.gitlab import GitLabOAuthenticator
from oauthenticator.google import GoogleOAuthenticator
from tornado import web

REFUSED = (
    "Your account ({name}) is not in a group that may use this Labspace. "
    "Ask an administrator to add you to one, then sign in again."
)


class ExplainRefusalMixin:
    """Refusals carry a message the error page shows, instead of a bare 403."""

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        self.log.warning("Refused sign-in for %s: not in an allowed group or user list", username)
        raise web.HTTPError(403, REFUSED.format(name=username))

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh as OAuthenticator does, then require a new sign-in if the
        person has lost every group or listing that let them in."""
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if isinstance(refreshed, dict):
            try:
                await self.check_allowed(refreshed["name"], refreshed)
            except web.HTTPError:
                self.log.info("%s is no longer allowed; ending their session", user.name)
                return False
        return refreshed


class LabspaceOIDCAuthenticator(ExplainRefusalMixin, GenericOAuthenticator):
    """Generic OpenID Connect (also the Keycloak and Okta presets)."""


class LabspaceGitHubAuthenticator(ExplainRefusalMixin, GitHubOAuthenticator):
    """GitHub; teams become groups named ``org:team``."""


class LabspaceGitLabAuthenticator(ExplainRefusalMixin, GitLabOAuthenticator):
    """GitLab (gitlab.com or a self-hosted server)."""


class LabspaceGoogleAuthenticator(ExplainRefusalMixin, GoogleOAuthenticator):
    """Google accounts, optionally limited to hosted domains."""


class LabspaceAzureADAuthenticator(ExplainRefusalMixin, AzureAdOAuthenticator):
    """Microsoft Entra ID (Azure AD)."""

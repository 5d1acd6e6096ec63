from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup", views.sign_up, name="signup"),
    path("login", views.SignInView.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("password", views.PasswordChangeView.as_view(), name="password_change"),
    path("settings/tokens", views.api_tokens, name="api_tokens"),
    path("settings/tokens/<int:token_id>/revoke", views.revoke_api_token, name="api_token_revoke"),
]

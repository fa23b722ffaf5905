from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.index),
    path("whoami", views.whoami),
    path("echo", views.echo),
    path("boom", views.boom),
    path("download", views.download),
]

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.utils.html import format_html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title></head>
<body><h1>{}</h1>{}</body></html>"""


def home(request):
    if request.user.is_authenticated:
        body = format_html('<p><a href="/private/">Your page</a></p>')
    else:
        body = format_html('<p><a href="/oidc/authenticate/?next=/private/">Sign in with portvakt</a></p>')
    return HttpResponse(format_html(PAGE, "Example app", "Example app", body))


@login_required
def private(request):
    body = format_html(
        '<p>Signed in as <strong id="email">{}</strong></p>'
        '<form method="post" action="/oidc/logout/">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
        '<button type="submit">Sign out</button></form>',
        request.user.email,
        get_token(request),
    )
    return HttpResponse(format_html(PAGE, "Private", "Private page", body))

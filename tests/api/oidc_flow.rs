//! Drives the OIDC browser flow like a browser without JavaScript would: follows no redirects
//! by itself, keeps the cookies it is given, and fills the forms from their hidden inputs.
//! Shared by every OIDC test.

#![allow(dead_code)]

use std::collections::HashMap;

use reqwest::{Client, Response, StatusCode, redirect};
use serde_json::Value;

use crate::helpers::TestApp;

/// Registers a client through the admin API; returns the 201 body (`client_id`, `client_secret`).
pub async fn register_client(app: &TestApp, admin_token: &str, body: Value) -> Value {
    let response = app
        .send(
            app.authed(reqwest::Method::POST, "/api/v1/admin/clients", admin_token)
                .json(&body),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "client registration"
    );
    response.json().await.expect("client")
}

/// A browser: its own cookies, no automatic redirects.
pub struct Browser {
    http: Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            http: Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, response: &Response) {
        for v in response.headers().get_all("set-cookie") {
            let v = v.to_str().expect("ascii cookie");
            let pair = v.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub async fn get(&mut self, path_or_url: &str) -> Response {
        let response = self
            .http
            .get(self.url(path_or_url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        self.absorb(&response);
        response
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let response = self
            .http
            .post(self.url(path))
            .header("cookie", self.cookie_header())
            .form(fields)
            .send()
            .await
            .expect("request");
        self.absorb(&response);
        response
    }

    /// Submits the form of `html` (its hidden inputs plus `fields`) to `action`.
    pub async fn submit(&mut self, html: &str, action: &str, fields: &[(&str, &str)]) -> Response {
        let mut all: Vec<(String, String)> = hidden_inputs(html);
        for (k, v) in fields {
            all.push(((*k).to_owned(), (*v).to_owned()));
        }
        let borrowed: Vec<(&str, &str)> =
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post_form(action, &borrowed).await
    }
}

/// Every `<input type="hidden" name=.. value=..>` of a page, in order.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The hidden input `name` of a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    hidden_inputs(html)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The query parameters of a redirect's `Location`.
pub fn redirect_params(response: &Response) -> HashMap<String, String> {
    let location = response
        .headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .expect("ascii");
    url::Url::parse(location)
        .expect("absolute Location")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The `Location` of a redirect without its query.
pub fn redirect_target(response: &Response) -> String {
    let location = response.headers()["location"].to_str().expect("ascii");
    location.split('?').next().unwrap_or("").to_owned()
}

/// `/oauth2/authorize?...` with `response_type=code`, `scope=openid` (unless given) and `extra`.
pub fn authorize_path(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse("http://x/oauth2/authorize").expect("url");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client_id);
        q.append_pair("redirect_uri", redirect_uri);
        q.append_pair("response_type", "code");
        if !extra.iter().any(|(k, _)| *k == "scope") {
            q.append_pair("scope", "openid");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    format!("/oauth2/authorize?{}", url.query().unwrap_or(""))
}

/// Walks authorize → login → (consent) in `browser` and returns the final redirect.
pub async fn sign_in(
    browser: &mut Browser,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
    email: &str,
    password: &str,
) -> Response {
    let page = browser
        .get(&authorize_path(client_id, redirect_uri, extra))
        .await;
    assert_eq!(page.status(), StatusCode::OK, "the login page");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("action=\"/oauth2/login\""),
        "a login form: {html}"
    );
    let next = browser
        .submit(
            &html,
            "/oauth2/login",
            &[("email", email), ("password", password)],
        )
        .await;
    consent_if_asked(browser, next).await
}

/// Allows on the consent page if that is what `response` is; returns the redirect.
pub async fn consent_if_asked(browser: &mut Browser, response: Response) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let html = response.text().await.expect("html");
    assert!(
        html.contains("action=\"/oauth2/consent\""),
        "a consent form: {html}"
    );
    browser
        .submit(&html, "/oauth2/consent", &[("decision", "allow")])
        .await
}

/// A full authorization in a new browser; returns the code.
pub async fn authorize_code(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
    email: &str,
    password: &str,
) -> String {
    let mut browser = Browser::new(app);
    let done = sign_in(
        &mut browser,
        client_id,
        redirect_uri,
        extra,
        email,
        password,
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "back to the client");
    let params = redirect_params(&done);
    assert!(!params.contains_key("error"), "an error: {params:?}");
    params.get("code").expect("a code").clone()
}

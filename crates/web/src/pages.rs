//! Server-rendered pages for browsers, in English and French (other locales fall back
//! to English): unknown instance, blocked instance, onboarding pending, and the auth
//! pages (password choice, login, home, their errors). The auth forms carry the
//! script of `assets/passphrase.js` inline: no page loads anything else.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use crate::error::html_escape;

/// The page language from `Accept-Language` (for pages with no instance).
pub(crate) fn locale_from(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim_start().starts_with("fr") {
        "fr"
    } else {
        "en"
    }
}

fn t(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "not_found_title" if fr => "Instance introuvable",
        "not_found_title" => "Instance not found",
        "not_found_body" if fr => {
            "Aucun Hearth ne répond à cette adresse. Vérifiez l'adresse saisie."
        }
        "not_found_body" => "No Hearth answers at this address. Check the address you typed.",
        "blocked_title" if fr => "Votre Hearth est bloqué",
        "blocked_title" => "Your Hearth is blocked",
        "blocked_contact" if fr => {
            "Vos données sont intactes. Contactez votre hébergeur pour le débloquer."
        }
        "blocked_contact" => "Your data is safe. Contact your host to have it unblocked.",
        "LOGIN_FAILED" if fr => {
            "Votre Hearth a été bloqué à cause de trop nombreux essais de connexion."
        }
        "LOGIN_FAILED" => "Your Hearth was blocked because of too many login attempts.",
        "PAYMENT_FAILED" if fr => "Votre Hearth nécessite un paiement.",
        "PAYMENT_FAILED" => "Your Hearth requires a payment.",
        "UNKNOWN" if fr => "Votre Hearth a été bloqué pour une raison inconnue.",
        "UNKNOWN" => "Your Hearth is blocked for an unknown reason.",
        "IMPORTING" | "MOVING" if fr => {
            "Vos données sont en cours de déménagement. Revenez dans quelques minutes."
        }
        "IMPORTING" | "MOVING" => "Your data is being moved. Come back in a few minutes.",
        "onboarding_title" if fr => "Votre Hearth n'est pas encore activé",
        "onboarding_title" => "Your Hearth is not activated yet",
        "onboarding_body" if fr => {
            "Ouvrez le lien reçu par e-mail pour choisir votre mot de passe."
        }
        "onboarding_body" => "Open the link you received by e-mail to choose your password.",
        _ => auth_text(fr, key),
    }
}

/// The words of the auth pages.
fn auth_text(fr: bool, key: &str) -> &'static str {
    match key {
        "password" if fr => "Mot de passe",
        "password" => "Password",
        "confirm" if fr => "Confirmez le mot de passe",
        "confirm" => "Confirm the password",
        "working" if fr => "Protection du mot de passe…",
        "working" => "Securing your password…",
        "failed" if fr => "Votre navigateur n'a pas pu protéger le mot de passe.",
        "failed" => "Your browser could not secure the password.",
        "noscript" if fr => {
            "Cette page a besoin de JavaScript : votre mot de passe est chiffré dans votre \
             navigateur avant d'être envoyé."
        }
        "noscript" => {
            "This page needs JavaScript: your password is hashed in your browser before it is sent."
        }
        "choose_title" if fr => "Choisissez votre mot de passe",
        "choose_title" => "Choose your password",
        "choose_intro" if fr => "Ce mot de passe protège vos données sur",
        "choose_intro" => "This password protects your data on",
        "mismatch" if fr => "Les deux mots de passe sont différents.",
        "mismatch" => "The two passwords differ.",
        "choose_submit" if fr => "Enregistrer mon mot de passe",
        "choose_submit" => "Save my password",
        "login_title" if fr => "Connexion",
        "login_title" => "Log in",
        "login_intro" if fr => "Saisissez votre mot de passe pour accéder à",
        "login_intro" => "Type your password to open",
        "long_run" if fr => "Rester connecté",
        "long_run" => "Stay logged in",
        "login_submit" if fr => "Se connecter",
        "login_submit" => "Log in",
        "wrong_password" if fr => "Mot de passe incorrect. Réessayez.",
        "wrong_password" => "Incorrect password. Try again.",
        "csrf_expired" if fr => "Cette page avait expiré. Saisissez à nouveau votre mot de passe.",
        "csrf_expired" => "This page had expired. Type your password again.",
        "home_title" if fr => "Bienvenue",
        "home_title" => "Welcome",
        "home_body" if fr => "Vous êtes connecté à",
        "home_body" => "You are logged in to",
        "settings_link" if fr => "Paramètres : export, import, déménagement",
        "settings_link" => "Settings: export, import, move",
        "logout" if fr => "Se déconnecter",
        "logout" => "Log out",
        "bad_token_title" if fr => "Ce lien n'est pas valide",
        "bad_token_title" => "This link is not valid",
        "bad_token_body" if fr => "Vérifiez que vous avez ouvert le lien complet reçu par e-mail.",
        "bad_token_body" => "Check that you opened the whole link from the e-mail you received.",
        "used_token_title" if fr => "Votre mot de passe est déjà choisi",
        "used_token_title" => "Your password is already chosen",
        "used_token_body" if fr => "Ce lien d'activation a déjà servi.",
        "used_token_body" => "This activation link was already used.",
        "missing_title" if fr => "Aucun mot de passe reçu",
        "missing_title" => "No password received",
        "missing_body" if fr => "Revenez en arrière et saisissez-le à nouveau.",
        "missing_body" => "Go back and type it again.",
        "iterations_title" if fr => "Réglage de chiffrement inattendu",
        "iterations_title" => "Unexpected hashing setting",
        "iterations_body" if fr => "Rechargez la page et réessayez.",
        "iterations_body" => "Reload the page and try again.",
        "bad_redirect_title" if fr => "Adresse de retour invalide",
        "bad_redirect_title" => "Invalid return address",
        "bad_redirect_body" if fr => {
            "L'adresse à ouvrir après la connexion n'appartient pas à ce Hearth."
        }
        "bad_redirect_body" => {
            "The address to open after logging in does not belong to this Hearth."
        }
        "go_login" if fr => "Se connecter",
        "go_login" => "Log in",
        _ => "",
    }
}

/// A translated message, for answers that are not pages (`{"error": …}`).
pub(crate) fn text(locale: &str, key: &str) -> &'static str {
    t(locale, key)
}

/// The sentence explaining a blocking reason (a custom reason is shown as is).
pub(crate) fn blocked_reason(locale: &str, reason: &str) -> String {
    match t(locale, reason) {
        "" => reason.to_owned(),
        text => text.to_owned(),
    }
}

pub(crate) fn page(locale: &str, title: &str, paragraphs: &[&str]) -> Html<String> {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>\n", html_escape(p)))
        .collect();
    let title = html_escape(title);
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n"
    ))
}

/// 303 to `location` (500 if it cannot be a header value).
pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `Cache-Control: no-store` on a page or answer that holds a session's secrets.
pub(crate) fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The script that hashes passwords, inlined into the forms that need it.
const PASSPHRASE_JS: &str = include_str!("assets/passphrase.js");

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;\
padding:0 1rem;color:#222}label{display:block;margin:.8rem 0 .2rem}\
input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}.info{color:#555}";

/// A page whose body is already HTML (every piece of text in it escaped by the caller).
pub(crate) fn layout(locale: &str, title: &str, body: &str, script: bool) -> Html<String> {
    let title = html_escape(title);
    let script = if script {
        format!("<script>\n{PASSPHRASE_JS}</script>\n")
    } else {
        String::new()
    };
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>{STYLE}</style></head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}</main>\n{script}</body>\n</html>\n"
    ))
}

/// The attributes the script reads on a password form: salt, iterations, messages.
pub(crate) fn form_data(locale: &str, salt: &str, iterations: u32) -> String {
    format!(
        "data-salt=\"{}\" data-iterations=\"{iterations}\" data-msg-working=\"{}\" \
         data-msg-failed=\"{}\" data-msg-mismatch=\"{}\"",
        html_escape(salt),
        html_escape(t(locale, "working")),
        html_escape(t(locale, "failed")),
        html_escape(t(locale, "mismatch")),
    )
}

pub(crate) fn status_line(error: Option<&str>) -> String {
    match error {
        Some(e) => format!(
            "<p id=\"status\" class=\"error\" role=\"alert\">{}</p>\n",
            html_escape(e)
        ),
        None => "<p id=\"status\" role=\"status\"></p>\n".into(),
    }
}

/// `GET /auth/passphrase`: choosing the first password (spec instances 3.2).
pub(crate) fn passphrase_choice(
    locale: &str,
    domain: &str,
    salt: &str,
    iterations: u32,
    register_token: &str,
) -> Html<String> {
    let body = format!(
        "<p>{intro} <strong>{domain}</strong>.</p>\n\
         <noscript><p class=\"error\">{noscript}</p></noscript>\n\
         <form method=\"POST\" action=\"/settings/passphrase\" {data}>\n\
         <input type=\"hidden\" name=\"register_token\" value=\"{token}\">\n\
         <input type=\"hidden\" name=\"iterations\" value=\"{iterations}\">\n\
         <input type=\"hidden\" name=\"passphrase\" value=\"\">\n\
         <label for=\"password\">{password}</label>\n\
         <input type=\"password\" id=\"password\" autocomplete=\"new-password\" required autofocus>\n\
         <label for=\"password-confirm\">{confirm}</label>\n\
         <input type=\"password\" id=\"password-confirm\" autocomplete=\"new-password\" required>\n\
         {status}<button type=\"submit\">{submit}</button>\n</form>\n",
        intro = html_escape(t(locale, "choose_intro")),
        domain = html_escape(domain),
        noscript = html_escape(t(locale, "noscript")),
        data = form_data(locale, salt, iterations),
        token = html_escape(register_token),
        password = html_escape(t(locale, "password")),
        confirm = html_escape(t(locale, "confirm")),
        status = status_line(None),
        submit = html_escape(t(locale, "choose_submit")),
    );
    layout(locale, t(locale, "choose_title"), &body, true)
}

/// What the login page shows besides its form.
pub(crate) struct LoginForm<'a> {
    pub domain: &'a str,
    pub salt: &'a str,
    pub iterations: u32,
    pub csrf_token: &'a str,
    /// Where to go after logging in (already checked), empty for the home page.
    pub redirect: &'a str,
    /// A message key: `wrong_password` or `csrf_expired`.
    pub error: Option<&'static str>,
}

/// `GET /auth/login` (spec core-api B.5).
pub(crate) fn login(locale: &str, f: &LoginForm<'_>) -> Html<String> {
    let body = format!(
        "<p>{intro} <strong>{domain}</strong>.</p>\n\
         <noscript><p class=\"error\">{noscript}</p></noscript>\n\
         <form method=\"POST\" action=\"/auth/login\" {data}>\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"redirect\" value=\"{redirect}\">\n\
         <input type=\"hidden\" name=\"passphrase\" value=\"\">\n\
         <label for=\"password\">{password}</label>\n\
         <input type=\"password\" id=\"password\" autocomplete=\"current-password\" required autofocus>\n\
         <label><input type=\"checkbox\" name=\"long-run-session\" value=\"1\"> {long_run}</label>\n\
         {status}<button type=\"submit\">{submit}</button>\n</form>\n",
        intro = html_escape(t(locale, "login_intro")),
        domain = html_escape(f.domain),
        noscript = html_escape(t(locale, "noscript")),
        data = form_data(locale, f.salt, f.iterations),
        csrf = html_escape(f.csrf_token),
        redirect = html_escape(f.redirect),
        password = html_escape(t(locale, "password")),
        long_run = html_escape(t(locale, "long_run")),
        status = status_line(f.error.map(|k| t(locale, k))),
        submit = html_escape(t(locale, "login_submit")),
    );
    layout(locale, t(locale, "login_title"), &body, true)
}

/// `GET /` when logged in: where the apps will be, and the logout button.
pub(crate) fn home(locale: &str, domain: &str, csrf_token: &str) -> Html<String> {
    let body = format!(
        "<p>{text} <strong id=\"domain\">{domain}</strong>.</p>\n\
         <p><a id=\"settings-link\" href=\"/settings\">{settings}</a></p>\n\
         <form method=\"POST\" action=\"/auth/logout\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <button type=\"submit\">{logout}</button>\n</form>\n",
        text = html_escape(t(locale, "home_body")),
        domain = html_escape(domain),
        csrf = html_escape(csrf_token),
        settings = html_escape(t(locale, "settings_link")),
        logout = html_escape(t(locale, "logout")),
    );
    layout(locale, t(locale, "home_title"), &body, false)
}

/// An auth error for a person: a title (message key `<kind>_title`), a sentence
/// (`<kind>_body`) and, for some, a link to the login page.
pub(crate) fn auth_error(locale: &str, kind: &str, login_link: bool) -> Html<String> {
    let title = t(locale, &format!("{kind}_title"));
    let mut body = format!(
        "<p class=\"error\">{}</p>\n",
        html_escape(t(locale, &format!("{kind}_body")))
    );
    if login_link {
        body.push_str(&format!(
            "<p><a href=\"/auth/login\">{}</a></p>\n",
            html_escape(t(locale, "go_login"))
        ));
    }
    layout(locale, title, &body, false)
}

pub(crate) fn not_found(locale: &str) -> Html<String> {
    page(
        locale,
        t(locale, "not_found_title"),
        &[t(locale, "not_found_body")],
    )
}

pub(crate) fn blocked(locale: &str, reason: &str) -> Html<String> {
    page(
        locale,
        t(locale, "blocked_title"),
        &[
            &blocked_reason(locale, reason),
            t(locale, "blocked_contact"),
        ],
    )
}

pub(crate) fn onboarding(locale: &str) -> Html<String> {
    page(
        locale,
        t(locale, "onboarding_title"),
        &[t(locale, "onboarding_body")],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localized_blocked_pages() {
        assert!(
            blocked("fr", "PAYMENT_FAILED")
                .0
                .contains("nécessite un paiement")
        );
        assert!(
            blocked("en", "LOGIN_FAILED")
                .0
                .contains("too many login attempts")
        );
        assert!(
            blocked("en", "<custom>").0.contains("&lt;custom&gt;"),
            "custom reasons are escaped"
        );
        assert!(not_found("en").0.contains("lang=\"en\""));
    }
}

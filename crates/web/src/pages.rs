//! Server-rendered pages for browsers, in English and French (other locales fall back
//! to English): unknown instance, blocked instance, onboarding pending.

use axum::{http::HeaderMap, http::header, response::Html};

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
        _ => "",
    }
}

/// The sentence explaining a blocking reason (a custom reason is shown as is).
pub(crate) fn blocked_reason(locale: &str, reason: &str) -> String {
    match t(locale, reason) {
        "" => reason.to_owned(),
        text => text.to_owned(),
    }
}

fn page(locale: &str, title: &str, paragraphs: &[&str]) -> Html<String> {
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

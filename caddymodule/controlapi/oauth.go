package controlapi

// The OAuth 2.0 endpoints of the control module. They speak the RFCs'
// formats (form-encoded requests, these JSON answers), not the API's.
const (
	PathAuthorize  = "/oauth/authorize"
	PathToken      = "/oauth/token"
	PathRevoke     = "/oauth/revoke"
	PathIntrospect = "/oauth/introspect"
	// PathOAuthMetadata is RFC 8414's well-known metadata document.
	PathOAuthMetadata = "/.well-known/oauth-authorization-server"
)

// OAuth grant types the token endpoint accepts.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
)

// OAuthErrorCode is an error code of RFC 6749 section 4.1.2.1 (authorisation
// answers) and 5.2 (token answers).
type OAuthErrorCode string

// The codes conngate answers with.
const (
	OAuthInvalidRequest          OAuthErrorCode = "invalid_request"
	OAuthInvalidClient           OAuthErrorCode = "invalid_client"
	OAuthInvalidGrant            OAuthErrorCode = "invalid_grant"
	OAuthUnauthorizedClient      OAuthErrorCode = "unauthorized_client"
	OAuthUnsupportedGrantType    OAuthErrorCode = "unsupported_grant_type"
	OAuthUnsupportedResponseType OAuthErrorCode = "unsupported_response_type"
	OAuthInvalidScope            OAuthErrorCode = "invalid_scope"
	OAuthAccessDenied            OAuthErrorCode = "access_denied"
	OAuthServerError             OAuthErrorCode = "server_error"
	// OAuthTemporarilyUnavailable: the store cannot be reached, or lost
	// its connection during a commit; the answer is a 503 with Retry-After.
	OAuthTemporarilyUnavailable OAuthErrorCode = "temporarily_unavailable"
)

// OAuthError is the JSON body of a token, revocation or introspection
// error (RFC 6749 section 5.2).
type OAuthError struct {
	Code        OAuthErrorCode `json:"error"`
	Description string         `json:"error_description,omitempty"`
}

// TokenResponse is a successful token answer (RFC 6749 section 5.1).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// Introspection is an RFC 7662 answer. Only Active is set for a token that
// is not active.
type Introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Scope     string `json:"scope,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	Audience  string `json:"aud,omitempty"`
	TokenID   string `json:"jti,omitempty"`
	// ConnectionID is the connection the token acts through.
	ConnectionID string `json:"cid,omitempty"`
}

// ServerMetadata is the RFC 8414 authorisation server metadata.
type ServerMetadata struct {
	Issuer                                    string   `json:"issuer"`
	AuthorizationEndpoint                     string   `json:"authorization_endpoint"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	JWKSURI                                   string   `json:"jwks_uri"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	ResponseModesSupported                    []string `json:"response_modes_supported"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported             []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
}

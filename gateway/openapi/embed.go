// Package openapi embeds the OpenAPI document generated from the protos and
// the HTTP rule file (make generate), served by the gateway at /openapi.json.
package openapi

import _ "embed"

// Document is the merged OpenAPI v2 document of every REST endpoint.
//
//go:embed tokenmanager.swagger.json
var Document []byte

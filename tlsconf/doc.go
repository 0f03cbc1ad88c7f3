// Package tlsconf builds the TLS settings of Sibyl's processes (docs/protocol.md §7,
// docs/security.md "TLS").
//
// Load reads the PEM files a process is given (--tls-cert, --tls-key, --tls-ca) into a
// pair of *tls.Config: Server for the process's listeners (node HTTP and WebSocket,
// controller HTTP, controller raft) and Client for every call it makes to another process
// and for Sibyl's clients, which verify the peer's certificate against the CA.
//
// NewCA and CA.Issue make the throwaway certificate authority of `sibyl dev --tls`: ECDSA
// P-256 keys and X.509 certificates from the standard library, each process's valid for
// 127.0.0.1 and localhost. WriteDev lays them out under a directory as ca.pem plus
// NAME.pem and NAME-key.pem per process.
//
// Sibyl's TLS authenticates servers only: a caller is authenticated by the cluster secret
// (or a client's token) it presents inside the encrypted connection.
package tlsconf

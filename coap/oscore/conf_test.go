package oscore

import (
	"reflect"
	"strings"
	"testing"
)

// The example files of libcoap's coap-oscore-conf(5).
const (
	manServerConf = `
# Master Secret (same for both client and server)
master_secret,hex,"0102030405060708090a0b0c0d0e0f10"

# Master Salt (same for both client and server)
master_salt,hex,"9e7ca92223786340"

# Sender ID
sender_id,ascii,"server"

# Recipient ID
recipient_id,ascii,"client"

# Replay Window (usually 32)
replay_window,integer,32

# AEAD COSE Cipher Algorithm (usually 10)
aead_alg,integer,10

# HKDF COSE Algorithm (usually -10)
hkdf_alg,integer,-10
`
	manClientConf = `master_secret,hex,"0102030405060708090a0b0c0d0e0f10"
master_salt,hex,"9e7ca92223786340"
sender_id,ascii,"client"
recipient_id,ascii,"server"
replay_window,integer,32
aead_alg,integer,10
hkdf_alg,integer,-10
`
)

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       Params
	}{
		{"man page server", manServerConf, Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte("server"), RecipientID: []byte("client"), ReplayWindow: 32, AEAD: 10, HKDF: -10}},
		{"man page client", manClientConf, Params{MasterSecret: tvSecret, MasterSalt: tvSalt, SenderID: []byte("client"), RecipientID: []byte("server"), ReplayWindow: 32, AEAD: 10, HKDF: -10}},
		// libcoap's tests/test_oscore.c, C.3.1
		{"empty sender ID, ID context",
			"master_secret,hex,\"0102030405060708090a0b0c0d0e0f10\"\nmaster_salt,hex,\"9e7ca92223786340\"\nid_context,hex,\"37cbf3210017a2d3\"\nsender_id,hex,\"\"\nrecipient_id,hex,\"01\"\n",
			Params{MasterSecret: tvSecret, MasterSalt: tvSalt, IDContext: tvIDCtx, SenderID: []byte{}, RecipientID: []byte{1}}},
		{"unquoted, CRLF, no final newline, text algorithms",
			"master_secret,ascii,secret\r\n  # indented comment\r\n\r\nsender_id,hex,0A\r\nrecipient_id,ascii,\"\"\r\naead_alg,text,\"AES-CCM-16-64-128\"\r\nhkdf_alg,text,direct+HKDF-SHA-256\r\nssn_freq,integer,100\r\nrfc8613_b_1_2,bool,true\r\nrfc8613_b_2,bool,false",
			Params{MasterSecret: []byte("secret"), SenderID: []byte{10}, RecipientID: []byte{}, AEAD: 10, HKDF: -10, SSNFreq: 100}},
		{"ascii with commas and quotes", "master_secret,ascii,\"a,b\"c\"\nsender_id,ascii,x\nrecipient_id,ascii,y\nid_context,ascii,\"\"\n",
			Params{MasterSecret: []byte(`a,b"c`), SenderID: []byte("x"), RecipientID: []byte("y"), IDContext: []byte{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseConf(strings.NewReader(tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tc.want) {
				t.Fatalf("got %+v\nwant %+v", p, tc.want)
			}
			back, err := ParseConf(strings.NewReader(string(p.MarshalConf())))
			if err != nil {
				t.Fatalf("%v\n%s", err, p.MarshalConf())
			}
			if !reflect.DeepEqual(back, p) {
				t.Fatalf("round trip: %+v\nfrom %s", back, p.MarshalConf())
			}
		})
	}
}

// TestConfVectors: libcoap's configuration of vector C.1.1 derives the
// vector's keys.
func TestConfVectors(t *testing.T) {
	p, err := ParseConf(strings.NewReader("master_secret,hex,\"0102030405060708090a0b0c0d0e0f10\"\nmaster_salt,hex,\"9e7ca92223786340\"\nsender_id,hex,\"\"\nrecipient_id,hex,\"01\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := derive(p)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "sender key", k.sender[:], hx("f0910ed7295e6ad4b54fc793154302ff"))
	eq(t, "recipient key", k.recipient[:], hx("ffb14e093c94c9cac9471648b4f98710"))
}

func TestParseConfErrors(t *testing.T) {
	const base = "master_secret,hex,\"0102030405060708090a0b0c0d0e0f10\"\nsender_id,hex,\"01\"\nrecipient_id,hex,\"02\"\n"
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"unknown keyword", base + "master_sekret,hex,\"00\"\n", `line 4: unknown keyword "master_sekret"`},
		{"two fields", base + "replay_window,32\n", `line 4: not "keyword,encoding,value"`},
		{"encoding", base + "replay_window,hex,20\n", `line 4: replay_window: encoding "hex" not one of: integer`},
		{"odd hex", "master_secret,hex,\"0102030\"\n", "line 1: master_secret: invalid hex"},
		{"not hex", "\n\nmaster_secret,hex,zz\n", "line 3: master_secret: invalid hex"},
		{"unterminated quote", "master_secret,ascii,\"abc\n", "line 1: master_secret: unterminated quote"},
		{"lone quote", "master_secret,ascii,\"\n", "line 1: master_secret: unterminated quote"},
		{"duplicate", base + "sender_id,hex,\"03\"\n", "line 4: sender_id given twice"},
		{"second recipient", base + "recipient_id,hex,\"03\"\n", "line 4: recipient_id given twice"},
		{"missing secret", "sender_id,hex,\"01\"\nrecipient_id,hex,\"02\"\n", "no master_secret"},
		{"missing recipient", "master_secret,ascii,s\nsender_id,hex,\"01\"\n", "no recipient_id"},
		{"not an integer", base + "replay_window,integer,3x\n", `line 4: replay_window: "3x" is not an integer`},
		{"window 0", base + "replay_window,integer,0\n", "line 4: replay_window: 0 out of range 1..64"},
		{"window 65", base + "replay_window,integer,65\n", "line 4: replay_window: 65 out of range 1..64"},
		{"ssn_freq 0", base + "ssn_freq,integer,0\n", "line 4: ssn_freq: 0 is not positive"},
		{"huge integer", base + "ssn_freq,integer,99999999999\n", `"99999999999" is not an integer`},
		{"AEAD 11", base + "aead_alg,integer,11\n", "line 4: aead_alg: algorithm 11 not supported"},
		{"AEAD text", base + "aead_alg,text,AES-CCM-16-64-256\n", `line 4: aead_alg: unsupported algorithm "AES-CCM-16-64-256"`},
		{"HKDF", base + "hkdf_alg,integer,-11\n", "line 4: hkdf_alg: algorithm -11 not supported"},
		{"B.2", base + "rfc8613_b_2,bool,true\n", "line 4: rfc8613_b_2: only false is supported"},
		{"bool", base + "rfc8613_b_1_2,bool,yes\n", "line 4: rfc8613_b_1_2: only true is supported"},
		{"long ID", "sender_id,hex,\"0102030405060708\"\n", "line 1: sender_id: 8 bytes, longer than 7"},
		{"equal IDs", "master_secret,ascii,s\nsender_id,hex,\"01\"\nrecipient_id,hex,\"01\"\n", "sender and recipient ID are equal"},
		{"long line", base + "# " + strings.Repeat("x", maxConfLine) + "\n", "line 4: longer than 4096 bytes"},
		{"many lines", strings.Repeat("#\n", maxConfLines+1), "more than 1000 lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConf(strings.NewReader(tc.conf))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			for _, secret := range []string{"0102030405", "0102030"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q shows the secret", err)
				}
			}
		})
	}
}

func TestMarshalConf(t *testing.T) {
	p := Params{MasterSecret: tvSecret, SenderID: []byte{}, RecipientID: []byte{1}, IDContext: []byte{}}
	const want = "master_secret,hex,\"0102030405060708090a0b0c0d0e0f10\"\nid_context,hex,\"\"\nsender_id,hex,\"\"\nrecipient_id,hex,\"01\"\n"
	if got := string(p.MarshalConf()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

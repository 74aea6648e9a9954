package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/fwimage"
)

// ImagesBucket is the object store holding the images jobs name.
const ImagesBucket = "fudbench_images"

// Images are the images of submitted jobs in the object store, each
// named by the SHA-256 of its bytes: an agent checks what it fetched
// against the name before it flashes or pushes it.
type Images struct {
	obs jetstream.ObjectStore
}

// OpenImages creates the images bucket, or takes it as it is.
func OpenImages(ctx context.Context, js jetstream.JetStream) (*Images, error) {
	return openImages(ctx, js, 1)
}

func openImages(ctx context.Context, js jetstream.JetStream, replicas int) (*Images, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      ImagesBucket,
		Description: "fudbench images, named by their SHA-256",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: images bucket: %w", err)
	}
	return &Images{obs: obs}, nil
}

// Digest is the name an image is stored under: its SHA-256, in hex.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Put stores data unless an image with its digest is there already, and
// returns the digest.
func (im *Images) Put(ctx context.Context, data []byte) (string, error) {
	if len(data) > fwimage.MaxImageSize {
		return "", fmt.Errorf("lab: image of %d bytes: the limit is %d", len(data), fwimage.MaxImageSize)
	}
	d := Digest(data)
	if _, err := im.obs.GetInfo(ctx, d); err == nil {
		return d, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("lab: image %s: %w", d, err)
	}
	if _, err := im.obs.PutBytes(ctx, d, data); err != nil {
		return "", fmt.Errorf("lab: store image %s: %w", d, err)
	}
	return d, nil
}

// Get fetches the image named digest, refusing one larger than limit
// (fwimage.MaxImageSize when 0) by its recorded size before reading it,
// and one whose bytes do not hash to its name.
func (im *Images) Get(ctx context.Context, digest string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = fwimage.MaxImageSize
	}
	info, err := im.obs.GetInfo(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("lab: image %s: %w", digest, err)
	}
	if int64(info.Size) > limit {
		return nil, fmt.Errorf("lab: image %s is %d bytes: the limit is %d", digest, info.Size, limit)
	}
	r, err := im.obs.Get(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("lab: image %s: %w", digest, err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, limit+1)); err != nil {
		return nil, fmt.Errorf("lab: image %s: %w", digest, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("lab: image %s is more than %d bytes", digest, limit)
	}
	if got := Digest(buf.Bytes()); got != digest {
		return nil, fmt.Errorf("lab: image %s holds bytes whose SHA-256 is %s", digest, got)
	}
	return buf.Bytes(), nil
}

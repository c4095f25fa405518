// Applies the SCRAM users and ACLs of the SASL_SSL Kafka node (`./dev start kafka-secure`) in one
// JVM, as its `admin` super user, through Kafka's Admin API. ./dev runs it as a single-file
// program (`java -cp 'libs/*' Secure.java ADMIN_PROPERTIES [--revoke]`), since the broker's jars
// carry no ACL command-line tool and one JVM per binding would take a minute.
//
// Standard input holds one instruction per line, written by `kafka_secure_spec` in ./dev:
//   user NAME PASSWORD_FILE               a SCRAM-SHA-512 credential for NAME (made or replaced)
//   allow NAME OPERATION TYPE RESOURCE    a LITERAL ALLOW ACL for User:NAME from any host
// Both are idempotent: replacing a credential with the same password, or adding an ACL that
// exists, changes nothing. With --revoke the `allow` lines are deleted instead, and `user` lines
// are ignored.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.AuthenticationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class Secure {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Secure ADMIN_PROPERTIES [--revoke] < SPEC");
            System.exit(2);
        }
        boolean revoke = args.length > 1 && args[1].equals("--revoke");
        Properties config = new Properties();
        try (var in = Files.newInputStream(Path.of(args[0]))) {
            config.load(in);
        }
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        List<AclBinding> acls = new ArrayList<>();
        for (String line : new String(System.in.readAllBytes()).split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length == 0 || f[0].isEmpty()) {
                continue;
            }
            switch (f[0]) {
                case "user" -> users.add(new UserScramCredentialUpsertion(f[1],
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                        Files.readString(Path.of(f[2])).strip()));
                case "allow" -> acls.add(new AclBinding(
                        new ResourcePattern(ResourceType.fromString(f[3]), f[4], PatternType.LITERAL),
                        new AccessControlEntry("User:" + f[1], "*", AclOperation.fromString(f[2]),
                                AclPermissionType.ALLOW)));
                default -> throw new IllegalArgumentException("unknown instruction: " + line);
            }
        }
        // The node may take its listener up a moment before it has loaded the credentials from
        // its metadata: an authentication failure is retried for a minute.
        for (int attempt = 1; ; attempt++) {
            try {
                apply(config, revoke, users, acls);
                return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof AuthenticationException) || attempt == 30) {
                    throw e;
                }
                Thread.sleep(2000);
            }
        }
    }

    static void apply(Properties config, boolean revoke, List<UserScramCredentialAlteration> users,
            List<AclBinding> acls) throws Exception {
        try (Admin admin = Admin.create(config)) {
            if (revoke) {
                List<AclBindingFilter> filters = acls.stream().map(AclBinding::toFilter).toList();
                admin.deleteAcls(filters).all().get(30, TimeUnit.SECONDS);
                System.out.printf("revoked %d ACLs%n", acls.size());
                return;
            }
            if (!users.isEmpty()) {
                admin.alterUserScramCredentials(users).all().get(30, TimeUnit.SECONDS);
            }
            admin.createAcls(acls).all().get(30, TimeUnit.SECONDS);
            System.out.printf("%d SCRAM users, %d ACLs in place%n", users.size(), acls.size());
        }
    }
}
